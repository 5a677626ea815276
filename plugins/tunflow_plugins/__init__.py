"""tunflow's built-in pipeline stages, registered in the ``tunflow.stages`` entry-point group
exactly as a third-party plugin registers: ``gro``, ``gso``, ``filter``, ``capture``,
``ratelimit``, ``stats`` and ``wireguard``. Import them through :func:`tunflow.pipeline.load_stage_class` or
build them from a :class:`tunflow.pipeline.StageSpec`; the modules are public for subclassing.
"""
