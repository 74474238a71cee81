"""The registry of task types, the handler contract, and the built-in types.

A type is one decorated function that receives a TaskContext:

    @task_type("resize_images", description="Resizes the images of an upload.")
    def resize_images(ctx):
        ctx.log("starting")
        for i, image in enumerate(images):
            ctx.check_cancelled()   # raises TaskCancelled if a person cancelled the task
            ...
            ctx.progress(100 * (i + 1) // len(images))

Raising any exception fails the attempt (it is retried while attempts remain). The names of the built-in types are
part of the API.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Protocol

from django.conf import settings


class TaskCancelled(Exception):
    """Raised by TaskContext.check_cancelled() when a person cancelled the task; the attempt ends as cancelled."""


class SimulatedFailure(Exception):
    """The failure the simulated types raise on purpose."""


class TaskContext(Protocol):
    task_id: int
    attempt_number: int
    attempt_in_budget: int
    execution_time: float

    def log(self, message: str, level: str = "info") -> None: ...

    def progress(self, percent: int) -> None: ...

    def is_cancelled(self) -> bool: ...

    def check_cancelled(self) -> None: ...

    def sleep(self, seconds: float) -> None: ...


Handler = Callable[[TaskContext], None]


@dataclass(frozen=True)
class TaskType:
    name: str
    handler: Handler
    description: str


_registry: dict[str, TaskType] = {}


def task_type(name: str, *, description: str = "") -> Callable[[Handler], Handler]:
    """Register `handler` as the task type `name`."""

    def register(handler: Handler) -> Handler:
        if name in _registry and _registry[name].handler is not handler:
            raise ValueError(f"Task type {name!r} is already registered.")
        _registry[name] = TaskType(name=name, handler=handler, description=description or (handler.__doc__ or ""))
        return handler

    return register


def get(name: str) -> TaskType:
    return _registry[name]


def names() -> list[str]:
    return sorted(_registry)


def all_types() -> list[TaskType]:
    return [_registry[name] for name in names()]


def attempt_random(ctx: TaskContext) -> random.Random:
    """A random source per attempt: seeded from TASKRUNNER_RANDOM_SEED when set, so runs can be reproduced."""
    seed = settings.TASKRUNNER_RANDOM_SEED
    if seed:
        return random.Random(f"{seed}:{ctx.task_id}:{ctx.attempt_number}")  # nosec B311: simulation, not security
    return random.Random()  # nosec B311


def run_in_steps(ctx: TaskContext, *, fail_at: float | None = None) -> None:
    """Spend execution_time in small steps, reporting progress and honouring cancellation between steps.

    `fail_at` (a fraction of the run, 0..1) raises SimulatedFailure when the run gets there.
    """
    total = float(ctx.execution_time)
    steps = max(1, min(100, int(total / 0.1)))  # at most ten progress steps a second, at most 100 in all
    step_time = total / steps
    started = time.monotonic()
    for step in range(1, steps + 1):
        ctx.check_cancelled()
        if fail_at is not None and step / steps >= fail_at:
            raise SimulatedFailure(f"simulated failure at {int(100 * step / steps)}% of the run")
        if step_time:
            # Sleep until this step's deadline, so the bookkeeping between steps does not stretch the run.
            ctx.sleep(max(0.0, started + step * step_time - time.monotonic()))
            if step < steps:  # completion itself records 100%
                ctx.progress(int(100 * step / steps))


@task_type("simulated", description="Waits its execution time, reporting progress; fails at a random point "
           "with probability TASKRUNNER_FAILURE_RATE (0.3 by default).")
def simulated(ctx: TaskContext) -> None:
    rng = attempt_random(ctx)
    fails = rng.random() < settings.TASKRUNNER_FAILURE_RATE
    fail_at = rng.uniform(0.05, 1.0) if fails else None
    ctx.log(f"Working for {Decimal(str(ctx.execution_time)).normalize():f}s.")
    run_in_steps(ctx, fail_at=fail_at)
    ctx.log("Work done.")


@task_type("always_succeeds", description="Waits its execution time, reporting progress, and succeeds.")
def always_succeeds(ctx: TaskContext) -> None:
    run_in_steps(ctx)


@task_type("always_fails", description="Waits its execution time, then fails. Every attempt fails.")
def always_fails(ctx: TaskContext) -> None:
    run_in_steps(ctx)
    raise SimulatedFailure("this task type always fails")


@task_type("flaky", description="Fails its first two attempts and succeeds on the third.")
def flaky(ctx: TaskContext) -> None:
    run_in_steps(ctx)
    if ctx.attempt_in_budget < 3:
        raise SimulatedFailure(f"flaky failure on attempt {ctx.attempt_in_budget} (succeeds on the third)")
    ctx.log("Third time lucky.")
