"""Knowledge: facts about the kernel, iptables, nftables and meshes, kept as data.

Nothing here reads a host or parses user input; every fact cites where it comes from.
"""
