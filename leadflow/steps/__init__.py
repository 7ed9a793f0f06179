"""One function per seed step: read (crm), decide (domain), write (crm); what tasks, benchmarks and CLIs call."""
