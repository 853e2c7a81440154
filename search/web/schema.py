"""What the generated OpenAPI schema cannot say by itself (a drf-spectacular postprocessing hook)."""

from __future__ import annotations


def schema_finish(result: dict, generator, request, public) -> dict:
    """The click body is required, and names the product by id or by sku."""
    post = result.get("paths", {}).get("/api/clicks", {}).get("post")
    if post and "requestBody" in post:
        post["requestBody"]["required"] = True
    return result
