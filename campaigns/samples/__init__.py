"""Sample campaign CSVs shipped with the package (`importlib.resources.files(__name__)`).

`appointments.csv`: an appointment-reminder list of fictional numbers (NANP 555-01xx, UK
Ofcom drama range 020 7946 0xxx) with a few rows ingest rejects: an invalid number, 911,
a duplicate and a missing number.
"""
