"""Facts shared by every Vigil package (durations, config reading, HOST:PORT). Imports none of them."""
