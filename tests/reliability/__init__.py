"""Reliability: nothing is lost to a kill, a full disk or a dead server, and every mistake gets one clear line."""
