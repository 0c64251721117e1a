"""Students: built from the teacher and an Architecture by the enabled compression techniques,
their packed size and deployed form, and their files."""
