"""Built-in workloads, one module per benchmark family (plus shared helpers such as ``text``).

:func:`harness.workload.workloads` imports every module here on first use; each registers its
workload with ``@register_workload``. Importing this package alone imports none of them.
"""
