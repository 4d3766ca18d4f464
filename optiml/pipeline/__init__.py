"""The token pipeline: the OPT vocabulary (`vocab`), one-off preparation of a mixture into a token
cache (`prepare`, `cache`), and the packed training stream over that cache (`features`, `stream`).
"""
