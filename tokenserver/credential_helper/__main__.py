from tokenserver.credential_helper.main import main

main()
