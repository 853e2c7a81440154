"""The catalog's own background work on the real stack: admin imports (services.import_jobs)."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def import_job_task(job_id: int) -> str:
    """Run an admin import in a worker; safe to deliver twice (a job runs once)."""
    from catalog.services.import_jobs import import_job_run

    return import_job_run(job_id=job_id).status


@shared_task
def import_jobs_resume_task() -> int:
    """Resume the admin imports whose worker died (beat sends this every 30 s)."""
    from catalog.services.import_jobs import import_jobs_resume_stalled

    return import_jobs_resume_stalled()
