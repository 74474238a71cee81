from rest_framework import generics, serializers

from plaindrf.models import Item


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = ["id", "name", "status", "created_at"]


class ItemList(generics.ListAPIView):
    queryset = Item.objects.order_by("-id")  # newest first on the primary key index
    serializer_class = ItemSerializer


class ItemCreate(generics.CreateAPIView):
    queryset = Item.objects.all()
    serializer_class = ItemSerializer
