"""Machine translation for augmentation: language codes of each model family (`codes`),
sentence splitting and reassembly per script (`sentences`), two inference backends behind one
interface (`backends`: transformers `generate`, CTranslate2) and quality control of the
synthetic text (`quality`). The corpus stage that drives them is `pipeline/corpus/augment.py`."""
