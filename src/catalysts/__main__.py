from catalysts.cli import main

main()
