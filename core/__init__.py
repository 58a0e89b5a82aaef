"""simudy core: the framework-free reconstruction engine.

Nothing here imports FastAPI or Celery. Device and dtype are always passed in.
"""
