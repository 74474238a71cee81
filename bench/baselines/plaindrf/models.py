from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, default="pending")
    created_at = models.DateTimeField(auto_now_add=True)
