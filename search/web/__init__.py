"""The storefront and the JSON API: thin views that parse input, call one selector or
service, and render. Nothing below this package imports it."""
