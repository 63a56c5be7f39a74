"""Helpers shared by the tests: a farm on a throwaway cluster, a fake upstream, sdists."""
