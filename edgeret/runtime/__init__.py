"""Running a task on a backend.

The task session, task inputs, and the grader that picks a task by modality.
"""
