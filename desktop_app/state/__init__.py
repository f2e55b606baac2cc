"""Observable state and actions. QObjects with ``<prop>_changed`` signals or past-tense events; no widgets."""
