from paydar.cli import main

main()
