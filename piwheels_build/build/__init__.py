"""Building wheels: claim a build, fetch the sdist, build it in a sandbox, verify, store.

Modules: ``builder`` (the loop: claim, build, verify, store, record),
``interpreters`` (CPythons and their tags), ``sandbox`` (bubblewrap, caps),
``sdists`` (declared build requirements, read without running the sdist),
``reqcache`` (build requirements reused between builds), ``wheels`` (verify a
built wheel), ``elfdeps`` (the system libraries it links), ``buildlog`` (capped
logs).
"""
