from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import apis, views

app_name = "search"
urlpatterns = [
    path("", views.search_page, name="search"),
    path("search/image", views.image_search_page, name="image_search"),
    path("products/<int:pk>/", views.product_detail, name="product"),
    path("api/search", apis.SearchApi.as_view(), name="api_search"),
    path("api/search/image", apis.ImageSearchApi.as_view(), name="api_image_search"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
]
