Name: Time-based one-time codes as a second factor (pam_totp)
Default: no
Priority: 64
Auth-Type: Additional
Auth:
	required	pam_totp.so nullok
