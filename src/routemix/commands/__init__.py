"""The sub-commands of ``routemix``, one small module per group; :mod:`routemix.cli` dispatches.

Each module's ``add_parser(commands)`` adds its sub-commands to the ``routemix`` sub-parsers, their
options (shared ones from :mod:`routemix.commands.options`) and ``handler``, the function that
runs one. Handlers import what they run when they run, so that ``routemix --help`` stays quick.
"""
