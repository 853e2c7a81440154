from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from . import apis, views

app_name = "search"
urlpatterns = [
    path("", views.search_page, name="search"),
    path("search/image", views.image_search_page, name="image_search"),
    re_path(r"^search/photos/(?P<key>[0-9a-f]{32})\.jpg$", views.photo_file, name="photo"),
    path("products/<int:pk>/", views.product_detail, name="product"),
    path("products/<int:pk>/photo-search", views.product_photo_search, name="product_photo_search"),
    re_path(r"^r/(?P<search_id>[0-9a-f]{32})/(?P<pk>[0-9]+)/$", views.click_redirect, name="click"),
    path("api/clicks", apis.ClickApi.as_view(), name="api_clicks"),
    path("api/exports/clicks", apis.ClickExportApi.as_view(), name="api_export_clicks"),
    path("api/search", apis.SearchApi.as_view(), name="api_search"),
    path("api/search/image", apis.ImageSearchApi.as_view(), name="api_image_search"),
    path("api/suggest", apis.SuggestApi.as_view(), name="api_suggest"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
]
