"""What large photos cost a server: a live embedded-default server (runserver, as `make demo`
starts it) takes 8 photos at once, and its resident memory is watched from outside while it
answers. The floor is 8 ordinary photos (1 MP) at once, measured in the same run.

    .venv/bin/python benchmarks/photo_memory.py [--model DIR] [--concurrent 8]

Cases: shoppers' photo searches (the API) with the floor's 1 MP photo and with a 39.99 MP PNG of
132 KB (over SEARCH_PHOTO_MAX_PIXELS: refused from its header), and merchandisers adding products
in the admin with that 40 MP PNG (decoded, stored and indexed).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from common import ROOT, table


def png(width: int, height: int, colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for k, (name, data) in files.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A saved admin form answers 302; a refused one 200 with its errors: keep them apart."""

    def redirect_request(self, *args, **kwargs):
        return None


class Staff:
    """A signed-in admin session (its own cookies and CSRF token)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
        )
        self.form("/admin/login/?next=/admin/", {"username": "bench", "password": "pw-bench-1"}, {})

    def form(self, url: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> int:
        page = self.opener.open(self.base + url, timeout=120).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body, kind = multipart({**fields, "csrfmiddlewaretoken": token}, files)
        request = urllib.request.Request(
            self.base + url, data=body, headers={"Content-Type": kind, "Referer": self.base + url}
        )
        try:
            with self.opener.open(request, timeout=300) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


def photo_search(base: str, image: bytes) -> int:
    body, kind = multipart({}, {"image": ("photo.png", image)})
    request = urllib.request.Request(base + "/api/search/image", data=body, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def at_once(pid: int, count: int, call) -> tuple[list[int], float, float]:
    """Run `call(n)` in `count` threads at once; (statuses, slowest seconds, peak MB added)."""
    before = resident_mb(pid)
    peak, done = [before], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb(pid))
            time.sleep(0.005)

    statuses, seconds = [0] * count, [0.0] * count

    def one(n: int) -> None:
        started = time.monotonic()
        statuses[n] = call(n)
        seconds[n] = time.monotonic() - started

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    return statuses, max(seconds), peak[0] - before


def serve(tmp: Path, model: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
            "SHOP_SEARCH_VAR_DIR": str(tmp),
            "SEARCH_EMBEDDING_MODEL": model,
            "SEARCH_RATE_LIMITS": "",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SUPERUSER_PASSWORD": "pw-bench-1",
        }
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    for args in (
        ["migrate", "-v0"],
        ["createsuperuser", "--noinput", "--username", "bench", "--email", "b@example.com"],
    ):
        subprocess.run(manage + args, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    port = 8700 + os.getpid() % 200
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/", timeout=5).read()
            return server, base
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"the server did not start: {(tmp / 'server.log').read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder (default: a tiny random CLIP built here)")
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shop-photo-bench-"))
    model = args.model
    if not model:
        sys.path.insert(0, str(ROOT))
        from lab.tiny_model import build_tiny_clip

        model = str(build_tiny_clip(tmp / "tiny-clip", seed=0))
    server, base = serve(tmp, model)
    try:
        ordinary, huge = png(1200, 900), png(6324, 6324)
        print(f"photos: 1200x900 PNG {len(ordinary) // 1024} KB; 6324x6324 PNG {len(huge) // 1024} KB", flush=True)
        photo_search(base, ordinary)  # the model and store loaded before anything is measured
        staff = Staff(base)

        def add(n: int, image: bytes) -> int:
            fields = {"sku": f"BENCH-{uuid.uuid4().hex[:8]}", "title": f"Red mug {n}", "price": "5.00"}
            fields.update({"currency": "USD", "attributes": "{}", "active": "on", "category": "mugs"})
            return staff.form("/admin/catalog/product/add/", fields, {"image": ("mug.png", image)})

        cases = [
            ("photo search, 1.1 MP (floor)", lambda n: photo_search(base, ordinary)),
            ("photo search, 40 MP", lambda n: photo_search(base, huge)),
            ("admin add, 1.1 MP", lambda n: add(n, ordinary)),
            ("admin add, 40 MP", lambda n: add(n, huge)),
        ]
        rows, floor = [], None
        print("(an admin add answers 302 when saved; a photo search 200, or 400 when refused)")
        for label, call in cases:
            print(f"{label}: {args.concurrent} at once ...", flush=True)
            statuses, slowest, added = at_once(server.pid, args.concurrent, call)
            floor = max(added, 1.0) if floor is None else floor
            answers = ", ".join(f"{status} x{statuses.count(status)}" for status in sorted(set(statuses)))
            rows.append([label, answers, f"{slowest:.1f}", f"{added:+.0f}", f"{added / floor:.1f}"])
        print(f"\n{args.concurrent} requests at once to one embedded-default server (runserver); model {model}\n")
        print(table(["case", "answers", "slowest s", "resident MB added (peak)", "x floor"], rows))
        print(f"\nserver resident now: {resident_mb(server.pid):.0f} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
