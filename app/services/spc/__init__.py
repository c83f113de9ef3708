"""Statistical process control: control charts of the inspections and their alarms.

`charts` is the pure maths (limits, Western Electric rules, excursions); `shifts` forms
subgroups per day or shift; `service` reads the counts from the database. See docs/spc.md.
"""
