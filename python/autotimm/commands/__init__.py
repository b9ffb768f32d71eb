"""The ``autotimm`` command's parts: defaults, argument rewriting, checks, errors, and the
subcommands (Lightning's ``fit``/``validate``/``test``/``predict``, ``predict --source``).

Only :mod:`autotimm.cli` is the entry point; these modules import torch and
Lightning only when a subcommand needs them.
"""
