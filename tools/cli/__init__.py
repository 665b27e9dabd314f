"""The ``midstream`` command line: flags and settings, the interactive prompt, the demo, the log file.

- ``main``         the command: options and settings, then a session (interactive, -p or the demo)
- ``options``      every option in one table: flag, settings key, type, range, default
- ``settings``     the user's and the project's settings.toml
- ``modes``        which permission mode a session starts in, and why
- ``sessions``     opening, resuming and listing sessions
- ``picker``       the --resume / /resume list to move through and filter, on a terminal
- ``fullview``     /transcript: the whole session from its file, nothing folded
- ``repl``         the interactive session: prompt, turns with Esc watched, questions to the person
- ``prompt``       the input line and its history
- ``typeahead``    what the person types while a reply streams or tools run
- ``slash``        slash commands and !command
- ``interrupts``   Ctrl-C, Esc, SIGTERM and SIGHUP
- ``demo``         --demo: the real agent against a scripted model on 127.0.0.1
- ``logs``         the rotating log file, free of secrets
"""
