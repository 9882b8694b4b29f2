"""The screening reader's web app (issue 25): a worklist of the hub's captures, each capture's image with
its quality and grade, and decisions by named readers, beside the hub on the same database.

``models``    the reader tables (readers, sessions, decisions, audit log)
``accounts``  password hashing (argon2), sessions, the log-in rate limit
``queries``   the worklist, neighbours, decisions and audit rows on the database
``reports``   per site and day: gradable, referable, retake rates, reader-machine kappa
``charts``    a record's machine answers as bars and plain facts for the capture view
``screens``   headless chromium screenshots (make demo, the browser tests)
``images``    a capture's decoded image, scaled, from the hub's DICOM
``web``       the Starlette application (pages, forms, security headers)
``serve``     uvicorn in a thread: how ``edgeret serve`` runs it
"""
