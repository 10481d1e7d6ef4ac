"""Training: ``accelerate launch train_realciao.py -opt options/FILE.yml``."""
