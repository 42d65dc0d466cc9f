"""The manager's web pages (server-rendered Jinja2, templates in web/templates/cloud, CSS/JS in
web/static/cloud): one module and one blueprint per page group (`home` with the static files, `orders`,
`attention`, `dashboard`, `products`, `prices`, `rules` (a scheduled price rule's page), `stocks`,
`reports`, `sites`, `settings`), the helpers they share in `common`, the SVG charts in `charts`. Pages read and change through the domain modules (orders, catalog, money, stock,
alerts, access...), never around them. `create_app` (cloud_sync/web/app.py) registers the blueprints.

This package's own module imports nothing, so that a page importing `common` makes no circle."""
