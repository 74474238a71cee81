from django.urls import path

from plaindrf.views import ItemCreate, ItemList

urlpatterns = [path("items/", ItemList.as_view()), path("items/new/", ItemCreate.as_view())]
