"""What happens after a job (or a tick's missed or late deadline): actions on run
templates and companies (``spec``), the delivery ledger written with every job's end and
tick event (``ledger``), the daemon's worker that performs it (``worker``), and each
module's way of performing (``performers``, ``chain``)."""
