"""Host facts: one kernel as seen from the live machine, a mounted host root, or offline inputs.

Pure reads; nothing here changes the host.
"""
