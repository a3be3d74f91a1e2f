"""A fresh process's view of one runtime: ``python .../squeezenet/deploy/probe RUNTIME FILE THREADS SHAPE`` loads the
file with that runtime alone (plus numpy), runs one batch and prints the load time and the peak memory as a device
would see them. Run by path, so that neither this package nor torch is imported for the other runtimes (and no
sibling module named like a runtime can shadow it); ``bench`` calls it through :func:`squeezenet.deploy.bench.runtime_only`.
"""
