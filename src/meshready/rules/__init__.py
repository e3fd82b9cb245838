"""Rules: parse interception rules (iptables-restore input, iptables commands, nft scripts) and derive
the module requests the kernel will make for them under a backend."""
