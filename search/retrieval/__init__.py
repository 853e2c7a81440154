"""The retrieval core: encoders, providers, the vector store and fusion.

Plain Python over numpy, torch and the Qdrant client, plus the settings its providers read:
no catalog, no search log, no Django views, forms or templates (import-linter checks this).
The rest of the serving app calls into it; it never calls back.
"""
