"""The dashboard's screens: main (everything live), detail (one event), help (the keys)."""
