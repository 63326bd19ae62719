"""python run_recbole_rag.py --model=RaSeRec --dataset=amazon-beauty [--key=value ...]"""

import sys

from recbole_rag.cli import main

if __name__ == "__main__":
    sys.exit(main())
