"""Distributed mode: the web host keeps the job service; GPU workers (Celery over Redis) make
the images. broker.py holds what both sides share, runner.py is the web host's side and
worker.py the GPU host's."""
