# Certificates, service-account keys and kubeconfigs of the local cluster (openssl only).
# Generated once per state dir; `down` removes them with the rest of the state.
# shellcheck shell=bash

# sign NAME SUBJECT EXTENDED-USAGE [SAN]: an EC P-256 key and a certificate signed by our CA.
sign() {
  local name=$1 subject=$2 usage=$3 san=${4:-}
  local key=$PKI_DIR/$name.key csr=$PKI_DIR/$name.csr ext=$PKI_DIR/$name.ext
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  openssl req -new -key "$key" -subj "$subject" -out "$csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$ext"
  openssl x509 -req -in "$csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$csr" "$ext"
}

# kubeconfig FILE USER CERT-NAME: a self-contained kubeconfig (certificates embedded).
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: featherweight-e2e
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$cert.key")
contexts:
- name: featherweight-e2e
  context:
    cluster: featherweight-e2e
    user: $user
    namespace: default
current-context: featherweight-e2e
EOF
  chmod 600 "$file"
}

ensure_pki() {
  if [[ -f $PKI_DIR/complete ]]; then return 0; fi
  log "generating CA, certificates, service-account key and kubeconfigs in $PKI_DIR"
  rm -rf "$PKI_DIR"; mkdir -p "$PKI_DIR"; chmod 700 "$PKI_DIR"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI_DIR/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=featherweight-e2e-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI_DIR/ca.crt"

  sign kube-apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The apiserver's client identity towards kubelets (logs, exec, port-forward).
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  sign admin "/O=system:masters/CN=featherweight-e2e-admin" clientAuth
  sign kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  sign kube-scheduler "/CN=system:kube-scheduler" clientAuth
  sign kube-proxy "/CN=system:kube-proxy" clientAuth
  # The Node authorizer and NodeRestriction identify the kubelet by this exact subject.
  sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  sign kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME"

  # Service-account token signing key (RSA: the one algorithm every client library verifies).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/sa.key" 2>/dev/null
  openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub"

  write_kubeconfig "$ADMIN_KUBECONFIG" featherweight-e2e-admin admin
  write_kubeconfig "$CONF_DIR/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  write_kubeconfig "$CONF_DIR/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  write_kubeconfig "$CONF_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$CONF_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
  touch "$PKI_DIR/complete"
}
