from trkd.cli import main

main()
