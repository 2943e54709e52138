"""What a run leaves for people who use its result: portable model folders, their model cards, and reading them back.

portable.py writes and describes the model / adapter folder (loadable with transformers + peft alone); card.py
writes the run folder's README.md (the model card); `peftlab predict` and `peftlab export` read through portable.load.
"""
