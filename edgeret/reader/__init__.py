"""The screening reader's web app (issue 25): a worklist of the hub's captures, each capture's image with
its quality and grade, and decisions by named readers, beside the hub on the same database.

``models``    the reader tables (readers, sessions, decisions, audit log)
``accounts``  password hashing (argon2), sessions, the log-in rate limit
``queries``   the worklist, neighbours, decisions and audit rows on the database
``images``    a capture's decoded image, scaled, from the hub's DICOM
``web``       the Starlette application (pages, forms, security headers)
``serve``     uvicorn in a thread: how ``edgeret serve`` runs it
"""
