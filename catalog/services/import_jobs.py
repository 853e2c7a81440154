"""Catalog imports started in the admin, run in the background: the request only stores the
upload and answers with a page that follows the job (an import of thousands of rows with image
URLs takes minutes, far past a web server's request timeout)."""

from __future__ import annotations

import logging
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.config import catalog_config
from catalog.models import ImportJob, process_id

from .importing import ImportCheckpoint, ImportFileError, catalog_import
from .importing.reading import format_detect

logger = logging.getLogger(__name__)
# rows written (and progress shown) at a time by a background import
JOB_CHUNK_ROWS = 200
# A running import says it is alive this often (seconds), whatever its chunk is doing: one silent
# for CATALOG_IMPORT_STALL_SECONDS has lost its process.
BEAT_SECONDS = 10


def import_job_start(*, upload: UploadedFile, images: UploadedFile | None = None, user=None) -> ImportJob:
    """Keep the uploads and start importing them in the background; returns the job to follow.
    With a broker (the real stack) a Celery worker runs it; in the embedded default, a thread of
    this server."""
    job = ImportJob(
        created_by=user if getattr(user, "is_authenticated", False) else None,
        file_name=Path(upload.name).name[:255],
        rows_total=_rows_about(upload),
    )
    job.upload.save(f"{timezone.now():%Y%m%d-%H%M%S}-{Path(upload.name).suffix.lower() or '.csv'}", upload, save=False)
    if images:
        job.images.save(f"{timezone.now():%Y%m%d-%H%M%S}-images.zip", images, save=False)
    job.save()
    transaction.on_commit(lambda: _dispatch(job.pk))
    return job


def _rows_about(upload: UploadedFile) -> int:
    """The file's data rows, about (a CSV's quoted cell may hold a line break): its lines, less
    a CSV's header; a last line without a line break counts too."""
    lines, last = 0, b"\n"
    for chunk in upload.chunks():
        lines += chunk.count(b"\n")
        last = chunk[-1:] or last
    upload.seek(0)
    lines += last != b"\n"
    try:
        header = format_detect(upload.name or "", None) == "csv"
    except ImportFileError:
        header = True
    return max(0, lines - header)


def _dispatch(job_id: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        threading.Thread(target=_run_in_thread, args=(job_id,), name=f"import-job-{job_id}", daemon=True).start()
        return
    from celery import current_app

    try:  # by name: the task (catalog.tasks) calls this module, not the other way round
        current_app.send_task("catalog.tasks.import_job_task", args=[job_id], retry=False)
    except Exception as exc:  # the broker is down: say so on the job's page
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            finished_at=timezone.now(),
            error=f"The import could not be queued ({exc}); the task queue is unreachable. Try again later.",
        )


def _run_in_thread(job_id: int) -> None:
    try:
        import_job_run(job_id=job_id)
    finally:
        connections.close_all()


def import_job_resume(*, job: ImportJob) -> bool:
    """Run a stalled import again (its server or worker died): it goes on after the last chunk it
    wrote. Returns False if the job is not stalled."""
    if not job.stalled:
        return False
    transaction.on_commit(lambda: _dispatch(job.pk))
    return True


def import_jobs_resume_stalled() -> int:
    """Resume every import whose process died (the sweep calls this): within a minute of a
    server or worker running again, an interrupted import goes on by itself; at once where its
    runner was a process of this host. Returns how many."""
    stale = timezone.now() - timedelta(seconds=catalog_config().import_stall_seconds)
    candidates = ImportJob.objects.filter(
        Q(status=ImportJob.Status.RUNNING) | Q(status=ImportJob.Status.QUEUED, created_at__lt=stale)
    ).only("pk", "status", "beat_at", "created_at", "runner")
    ids = [job.pk for job in candidates if job.stalled]
    for job_id in ids:
        logger.warning("Import job %s was interrupted (its process stopped); it goes on now", job_id)
        _dispatch(job_id)
    return len(ids)


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued (or stalled) import and store its report on the job (done), or why it
    stopped (failed). A second delivery of a job that is running does nothing; a stalled one
    goes on after the last chunk it wrote (its checkpoint, kept in `report` while it runs)."""
    now = timezone.now()
    job = ImportJob.objects.get(pk=job_id)
    if not job.stalled and job.status != ImportJob.Status.QUEUED:
        return job  # done, or running elsewhere (a task delivered twice)
    # claimed as it was seen: a second process that saw the same is refused by the database
    claimed = ImportJob.objects.filter(pk=job_id, status=job.status, beat_at=job.beat_at, runner=job.runner).update(
        status=ImportJob.Status.RUNNING, beat_at=now, runner=process_id()
    )
    job = ImportJob.objects.get(pk=job_id)
    if not claimed:
        return job
    saved = (job.report or {}).get("checkpoint")
    resume = ImportCheckpoint.from_dict(saved) if saved else None
    if resume is None:
        ImportJob.objects.filter(pk=job_id).update(rows_done=0)

    def checkpoint(point: ImportCheckpoint) -> None:
        # in the chunk's transaction: the rows, the counts and the progress shown move together
        ImportJob.objects.filter(pk=job_id).update(
            report={"checkpoint": point.as_dict()}, rows_done=point.rows, beat_at=timezone.now()
        )

    with _beating(job_id):
        job = _job_import(job, checkpoint=checkpoint, resume=resume)
    job.finished_at = timezone.now()
    job.rows_done = ImportJob.objects.values_list("rows_done", flat=True).get(pk=job_id)
    job.save(update_fields=["status", "error", "report", "finished_at", "rows_done"])
    for stored in (job.upload, job.images):  # the report is kept; the uploads are not needed any more
        if stored:
            stored.delete(save=False)
    ImportJob.objects.filter(pk=job_id).update(upload="", images="")
    return job


@contextmanager
def _beating(job_id: int) -> Iterator[None]:
    """Say every BEAT_SECONDS that the import is alive, from a thread of its own."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(BEAT_SECONDS):
                ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(beat_at=timezone.now())
        except Exception:  # a database that cannot take it now: the next beat tries again
            logger.warning("Import job %s could not say it is alive", job_id, exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"import-beat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def _job_import(job: ImportJob, *, checkpoint, resume: ImportCheckpoint | None) -> ImportJob:
    try:
        with tempfile.TemporaryDirectory(prefix="catalog-images-") as tmp:
            images_dir = None
            if job.images:
                images_dir = Path(tmp)
                with job.images.open("rb") as archive, zipfile.ZipFile(archive) as zf:
                    zf.extractall(images_dir)  # ZipFile.extract strips ".." and absolute parts
            with job.upload.open("rb") as source:
                report = catalog_import(
                    source=source,
                    name=job.file_name,
                    images_dir=images_dir,
                    chunk_size=JOB_CHUNK_ROWS,
                    checkpoint=checkpoint,
                    resume=resume,
                )
        if resume is not None:
            report.warnings.append(
                f"This import was interrupted after {resume.rows} rows (its server or worker stopped) "
                "and went on from there; the counts cover the whole file."
            )
        job.report = {
            "summary": report.summary(),
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "failed": report.failed,
            "lines": report.lines,
            "warnings": report.warnings,
            "errors": [{"line": e.line, "sku": e.sku, "message": e.message} for e in report.errors],
        }
        job.status = ImportJob.Status.DONE
    except ImportFileError as exc:
        job.status, job.error = ImportJob.Status.FAILED, str(exc)
    except Exception as exc:  # the job's page says the import stopped; the log has the traceback
        logger.exception("Import job %s stopped", job.pk)
        job.status, job.error = ImportJob.Status.FAILED, f"The import stopped: {str(exc)[:300]}"
    return job


__all__ = ["import_job_resume", "import_job_run", "import_job_start", "import_jobs_resume_stalled"]
