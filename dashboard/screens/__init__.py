"""The dashboard's screens: main (everything live), stats (the last hour), detail (one event),
help (the keys)."""
