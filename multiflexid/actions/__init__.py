"""What happens after a job: actions on run templates and companies (``spec``), the
delivery ledger written with every job's end (``ledger``), the daemon's worker that
performs it (``worker``), and each module's way of performing (``performers``,
``chain``)."""
