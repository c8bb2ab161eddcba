"""An App with periodic tasks, for the cron tests (kept apart so other tests' workers
do not enqueue cron jobs into their counts)."""

from __future__ import annotations

import pgjobs

app = pgjobs.App()


@app.periodic("* * * * * *")  # every second
@app.task(queue="cron")
def tick() -> str:
    return pgjobs.current_job().id.hex


@app.periodic("*/2 * * * * *", name="every_other_second", catch_up="all")
@app.task(queue="cron")
def tock() -> None:
    return None
