"""Code shared by the dealreg services: the published language and the plumbing around the logs.

Nothing here imports a service.
"""
