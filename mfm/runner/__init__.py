"""The queue's executors: the supervisor, the run process, queueing, GPU slots."""
