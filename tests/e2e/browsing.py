"""Checks the browser tests run on a page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page) -> list[str]:
    """Serious and critical accessibility violations axe-core finds on the page as it is now."""
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing; `make test` installs it (npm ci)")
        pytest.skip("axe-core not installed (npm ci)")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')"
    )
    return found


def admin_signed_in(browser, live_server, *codenames: str, viewport: dict | None = None):
    """A page signed in to the admin through its own login form, as a staff user with these
    permissions only."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("merch", password="pw-merch-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    page.goto(live_server.url + "/admin/login/?next=/admin/")
    page.fill("#id_username", "merch")
    page.fill("#id_password", "pw-merch-1")
    page.click("input[type=submit]")
    page.wait_for_url(live_server.url + "/admin/")
    return page
