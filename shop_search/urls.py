from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django.views.static import serve

# the admin's pages are few: its lists get the whole width (the product list's nine columns fit
# a laptop's screen) instead of a sidebar that repeats the home page
admin.site.enable_nav_sidebar = False
admin.site.site_header = "shop_search admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    # what browsers and crawlers ask for before they read the page's <link rel="icon">
    # not permanent: a browser would keep the file name of one release forever
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=False)),
    path("", include("search.web.urls")),
]
if settings.SERVE_MEDIA:
    # Fine for a small shop; behind a CDN or nginx set SERVE_MEDIA=0 and serve MEDIA_ROOT there.
    urlpatterns.append(
        re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})
    )
