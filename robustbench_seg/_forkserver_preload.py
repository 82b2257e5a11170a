"""Imported by the multiprocessing forkserver at its start (``set_forkserver_preload``): the
forkserver ends with the process that started it (see ``robustbench_seg.procs``)."""

from robustbench_seg.procs import die_with_parent

die_with_parent()
